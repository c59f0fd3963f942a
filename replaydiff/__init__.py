"""The application: the command line and the workflows that compose recorder, replayer and diff."""
