"""The coordinator's federation side: SuperLink process, run submission, the ServerApp."""
