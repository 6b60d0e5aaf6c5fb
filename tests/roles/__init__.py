"""Worker modules of the role tests: two roles with a type in common."""
