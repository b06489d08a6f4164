class ReferenceBackend:  # placeholder until the simulator lands
    name = "reference"
