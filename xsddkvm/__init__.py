"""xsddkvm: build XenServer supplemental packs in a throwaway DDK VM, in one command."""

__version__ = "0.1.0"
