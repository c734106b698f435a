"""The build lifecycle, one module per stage; ``pipeline`` runs them and undoes in reverse."""
