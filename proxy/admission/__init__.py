"""May this request reach a workspace: session, authorization, path, route, Origin."""
