"""The command line: `trading-mcp` and every subcommand, the process supervisor behind `up`, and the composition
root that starts an application (or several in one process) from its settings."""
