"""What is synced: the table of kinds and their pure translate functions."""
