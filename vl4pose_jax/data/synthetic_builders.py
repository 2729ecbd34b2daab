"""placeholder"""
SYNTHETIC_BUILDERS = {}
