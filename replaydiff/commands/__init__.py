"""One module per group of subcommands; `replaydiff.cli` assembles them."""
