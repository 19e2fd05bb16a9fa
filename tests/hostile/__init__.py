"""The hostile suite: obskit as root among processes and files other users control (issue classes of security.md)."""
