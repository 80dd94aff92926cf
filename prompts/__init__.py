"""Prompt templates (markdown with front matter) served as MCP prompts and used by the agent loop, and their loader."""
