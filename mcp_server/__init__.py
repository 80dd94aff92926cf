"""The MCP server (tools, resources, prompts, transports), the bridge and the CLI."""
