# One image for every mlgate process: `mlgate gateway`, `mlgate worker`, or the CLI.
# The gRPC code is generated here from protos/ (it is not committed), then the package is built as
# a wheel, so the runtime image holds neither the build tools nor the sources.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN pip install grpcio-tools==1.85.1
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY mlgate/ mlgate/
COPY brokers/ brokers/
COPY server/ server/
COPY workers/ workers/
COPY clients/ clients/
COPY storage/ storage/
# Two wheels: the client distribution (with the generated code) and the product that needs it.
RUN rm -rf clients/mlgate \
 && python -m grpc_tools.protoc -Iprotos --python_out=clients --grpc_python_out=clients \
      protos/mlgate/v1/*.proto protos/mlgate/oip/*.proto \
 && touch clients/mlgate/v1/__init__.py clients/mlgate/oip/__init__.py \
 && pip wheel --no-deps --wheel-dir /wheels ./clients .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    MLGATE_DATA_DIR=/var/lib/mlgate
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /var/lib/mlgate --create-home mlgate
USER mlgate
WORKDIR /var/lib/mlgate
EXPOSE 50051
ENTRYPOINT ["mlgate"]
CMD ["gateway"]
