"""The OpenAI-compatible server: protocol, backends, app, web page and command line."""
