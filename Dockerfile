# GPU training image: PyTorch with CUDA 12.8 and cuDNN 9 (NVIDIA driver 570 or newer), the
# project on top. Build, train, predict: docs/docker.md. The base is a build argument so that the
# same file builds on a locally made stand-in where no registry can be reached (tools/docker/).
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so that editing the code or the configs
# does not reinstall them. The constraints keep the base image's CUDA builds of torch and
# torchvision in place; they pin the installed distributions' versions, which pip compares
# (torch.__version__ may carry a +cu label that a wheel's metadata lacks).
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && python -c "from importlib.metadata import version; print(*(f'{d}=={version(d)}' for d in ('torch', 'torchvision')), sep='\n')" \
        > /tmp/constraints.txt \
    && python -m pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# The package itself (no dev extra), then the configs.
COPY README.md ./
COPY vae_lightning ./vae_lightning
RUN python -m pip install --no-cache-dir --no-deps . \
    && rm -rf build vae_lightning.egg-info
COPY configs ./configs

# An unprivileged user. Build with --build-arg UID="$(id -u)" --build-arg GID="$(id -g)" so
# that what the container writes into mounted folders belongs to you.
ARG UID=1000
ARG GID=1000
RUN groupadd --non-unique --gid "${GID}" vae \
    && useradd --non-unique --uid "${UID}" --gid "${GID}" --create-home --shell /bin/bash vae \
    && mkdir -p /app/data /app/lightning_logs \
    && chown "${UID}:${GID}" /app/data /app/lightning_logs
USER ${UID}:${GID}

# MNIST (data/MNIST/raw; the default config downloads it there when missing) and the runs
# (lightning_logs/version_N: config, checkpoints, TensorBoard events, predicted images).
VOLUME ["/app/data", "/app/lightning_logs"]

ENTRYPOINT ["python", "-m", "vae_lightning"]
CMD ["fit", "--config", "configs/default.yaml", "--config", "configs/gpu.yaml"]
