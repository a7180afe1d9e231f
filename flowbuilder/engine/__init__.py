"""The pure interpreter: IR × lead state × facts × now → decisions, with no I/O and no clock."""
