"""The control path: workspace options, backends that start and stop workspaces, and the
config emitters that tell a data plane where each user's workspace lives."""
