"""The client's way into the DDK guest: SSH transport and console dialogs."""
