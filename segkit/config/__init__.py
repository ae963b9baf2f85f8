"""Settings: the table that declares every setting, config files and recipes resolved into a run's values,
`KEY=VALUE` options, components' declared options, and the run folder's files."""
