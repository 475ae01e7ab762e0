"""Workspace costs, kept as Hatchery's PodTracker keeps them: each pod's runtime priced
(``pricing``) and added to the user's pay-model ``total-usage`` (``ledger``). The pod watch that
drives both is the Kubernetes backend's (launcher/kubernetes/cost_tracking.py); the local
backend charges nothing (its workspaces are processes on the gateway's own machine, with no
requested resources to price).
"""
