"""The catalogue an app loads: operations, mini-programs and products per tier."""
