"""The thin Flower ClientApp (the flwr-clientapp process): docs/architecture.md."""
