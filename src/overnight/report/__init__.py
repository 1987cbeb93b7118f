"""What a user reads in the morning: results.tsv/JSON and progress.png."""
