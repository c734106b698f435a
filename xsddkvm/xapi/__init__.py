"""Client adapters for a XenServer host: XenAPI calls, /import and /console."""
