"""Command implementations behind the `samba` CLI (registered in samba_cli.cli)."""
