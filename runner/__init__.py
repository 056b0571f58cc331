"""Everything about running swift: recipes, commands, backends, progress, GPUs, failures."""
