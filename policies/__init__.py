"""The default policy catalog, shipped as package data (YAML files beside this module)."""
