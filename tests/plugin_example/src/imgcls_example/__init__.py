"""imgcls-example-provider: the smallest provider that passes imgcls's contract suite (docs/providers.md)."""
