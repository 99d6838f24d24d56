"""What actions share: preparing and placing a gang inside a statement, the one level-by-level topology
search, and failure explanations."""
