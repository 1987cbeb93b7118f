"""Where and how a run happens: supervised processes, the sandbox, the runner, executors."""
