"""A protoc plugin (for `buf generate`, see buf.gen.yaml) that writes the Python SDK: messages
(`_pb2.py`), type stubs (`_pb2.pyi`) and gRPC stubs (`_pb2_grpc.py`), by running the protoc
that grpcio-tools embeds (PyPI, pinned in the Makefile) on the descriptors buf hands over.
grpcio-tools ships no standalone plugin binaries, and buf's `protoc_builtin` knows no
`grpc_python`, hence this bridge. Run it with target/tools/venv/bin/python.
"""

import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        descriptors = root / "descriptors.pb"
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
        out = root / "out"
        out.mkdir()
        status = protoc.main(
            [
                "protoc",
                f"--descriptor_set_in={descriptors}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                *request.file_to_generate,
            ]
        )
        if status != 0:
            response.error = f"grpc_tools.protoc exited with {status}"
        else:
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                response.file.add(
                    name=str(path.relative_to(out)), content=path.read_text()
                )
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
