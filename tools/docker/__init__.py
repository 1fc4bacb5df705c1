"""The Docker image's tools: a private engine (engine.sh), a local stand-in for the image's base
(standin_base.py) and the measurement of building and running the image (measure.py)."""

#: "1": the Docker tests fail, rather than skip, where no engine or client is found (measure.py sets it)
REQUIRED_ENV = "VAE_LIGHTNING_DOCKER_REQUIRED"
#: a file the Docker tests write each step's seconds into (measure.py reads it)
TIMINGS_ENV = "VAE_LIGHTNING_DOCKER_TIMINGS"
