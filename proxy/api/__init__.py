"""Hatchery's API and the pages around it: pay models, launch page, progress, dev login."""
