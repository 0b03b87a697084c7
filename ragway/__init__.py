"""The `ragway` command line and the local stack it runs."""
