# One image for every service process (api, worker, beat, migrate); docker-compose.yml picks the command.
#
# CPU build by default. For GPU workers build with a CUDA wheel of the same torch version, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t lbc-sparsity:cuda .
# (the NVIDIA driver comes from the host through the container toolkit; the wheel carries CUDA itself).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LBC_HOME=/var/lib/lbc

# torch first and on its own layer: it is by far the largest and changes least often.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY . /app
# Editable on purpose: `lbc migrate` finds alembic.ini and migrations/ beside the jobs package, which a
# regular wheel install would not carry (see jobs/migrate.py).
# The onnx extra: workers write model.onnx when a job asks for it (export.onnx). Both native builds (the N:M
# CPU kernel under lbc_core/kernels/native/build, the fused LBC step under lbc_core/sparsity/native/_build)
# run here with a compiler that is removed again; either one missing leaves its pure-PyTorch path.
RUN pip install -e ".[onnx]" \
    && apt-get update && apt-get install -y --no-install-recommends g++ \
    && (python -m lbc_core.kernels build || echo "N:M CPU kernel not built: the pure-PyTorch path will run") \
    && python -m lbc_core.sparsity.native.build --optional \
    && apt-get purge -y --auto-remove g++ && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 lbc \
    && mkdir -p "${LBC_HOME}" \
    && chown lbc:lbc "${LBC_HOME}"

USER lbc
EXPOSE 8000
# The embedded mode by default (`docker run -p 8000:8000 lbc-sparsity`); compose overrides the command.
CMD ["lbc", "serve", "--host", "0.0.0.0", "--port", "8000"]
