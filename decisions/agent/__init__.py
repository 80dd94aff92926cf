"""`trading-mcp agent`: an LLM decides on each signal through this server's MCP tools."""
