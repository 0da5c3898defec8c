"""The subset of Caffe's `caffe.proto` that GoogLeNet's files use, as protobuf message classes built at run time.

No Caffe install and no protoc: the message descriptions below are turned into a `FileDescriptorProto` and then into
Python message classes with `google.protobuf.message_factory`, in a private descriptor pool (so they never clash with
another `caffe` package registered in the default pool).

Field numbers and types are those of BVLC Caffe's `src/caffe/proto/caffe.proto` (upstream master), so binary
`.caffemodel` files and text `.prototxt` files of the real project parse into these classes. Only the fields that
GoogLeNet's `deploy.prototxt`, `train_val.prototxt` and `bvlc_googlenet.caffemodel` need are declared: other fields
of a binary file are kept as unknown fields, and `parse_prototxt` skips unknown fields of text files.

Both layer formats are covered: the current `layer` (LayerParameter, field 100 of NetParameter, string types) and the
legacy V1 `layers` (V1LayerParameter, field 2, enum types), and blobs with either `shape` or num/channels/height/width.

Example:
>>> net = NetParameter(name="tiny")
>>> layer = net.layer.add(name="fc", type="InnerProduct")
>>> blob = layer.blobs.add()
>>> blob.shape.dim.extend([2, 3])
>>> blob.data.extend([0.0] * 6)
>>> NetParameter.FromString(net.SerializeToString()).layer[0].blobs[0].shape.dim[:]
[2, 3]
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_PACKAGE = "caffe"
_F = descriptor_pb2.FieldDescriptorProto

# Scalar type names -> FieldDescriptorProto types.
_TYPES = {
    "string": _F.TYPE_STRING,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
}

# message -> list of (label, type, name, number, options); `type` is a scalar name, a message name, or "enum:Name"
# (an enum nested in the message). options: "packed" and/or ("default", text).
_MESSAGES: dict[str, list[tuple]] = {
    "BlobShape": [("repeated", "int64", "dim", 1, "packed")],
    "BlobProto": [
        ("optional", "BlobShape", "shape", 7),
        ("repeated", "float", "data", 5, "packed"),
        ("repeated", "float", "diff", 6, "packed"),
        ("repeated", "double", "double_data", 8, "packed"),
        ("repeated", "double", "double_diff", 9, "packed"),
        ("optional", "int32", "num", 1, ("default", "0")),
        ("optional", "int32", "channels", 2, ("default", "0")),
        ("optional", "int32", "height", 3, ("default", "0")),
        ("optional", "int32", "width", 4, ("default", "0")),
    ],
    "FillerParameter": [
        ("optional", "string", "type", 1, ("default", "constant")),
        ("optional", "float", "value", 2, ("default", "0")),
        ("optional", "float", "min", 3, ("default", "0")),
        ("optional", "float", "max", 4, ("default", "1")),
        ("optional", "float", "mean", 5, ("default", "0")),
        ("optional", "float", "std", 6, ("default", "1")),
    ],
    "NetParameter": [
        ("optional", "string", "name", 1),
        ("repeated", "string", "input", 3),
        ("repeated", "BlobShape", "input_shape", 8),
        ("repeated", "int32", "input_dim", 4),
        ("repeated", "LayerParameter", "layer", 100),
        ("repeated", "V1LayerParameter", "layers", 2),
    ],
    "NetStateRule": [("optional", "enum:Phase", "phase", 1)],
    "ParamSpec": [
        ("optional", "string", "name", 1),
        ("optional", "float", "lr_mult", 3, ("default", "1")),
        ("optional", "float", "decay_mult", 4, ("default", "1")),
    ],
    "LayerParameter": [
        ("optional", "string", "name", 1),
        ("optional", "string", "type", 2),
        ("repeated", "string", "bottom", 3),
        ("repeated", "string", "top", 4),
        ("repeated", "float", "loss_weight", 5),
        ("repeated", "ParamSpec", "param", 6),
        ("repeated", "BlobProto", "blobs", 7),
        ("repeated", "NetStateRule", "include", 8),
        ("repeated", "NetStateRule", "exclude", 9),
        ("optional", "ConcatParameter", "concat_param", 104),
        ("optional", "ConvolutionParameter", "convolution_param", 106),
        ("optional", "DropoutParameter", "dropout_param", 108),
        ("optional", "InnerProductParameter", "inner_product_param", 117),
        ("optional", "LRNParameter", "lrn_param", 118),
        ("optional", "PoolingParameter", "pooling_param", 121),
        ("optional", "InputParameter", "input_param", 143),
    ],
    "V1LayerParameter": [
        ("repeated", "string", "bottom", 2),
        ("repeated", "string", "top", 3),
        ("optional", "string", "name", 4),
        ("optional", "enum:LayerType", "type", 5),
        ("repeated", "BlobProto", "blobs", 6),
        ("repeated", "float", "blobs_lr", 7),
        ("repeated", "float", "weight_decay", 8),
        ("optional", "ConcatParameter", "concat_param", 9),
        ("optional", "ConvolutionParameter", "convolution_param", 10),
        ("optional", "DropoutParameter", "dropout_param", 12),
        ("optional", "InnerProductParameter", "inner_product_param", 17),
        ("optional", "LRNParameter", "lrn_param", 18),
        ("optional", "PoolingParameter", "pooling_param", 19),
        ("repeated", "NetStateRule", "include", 32),
        ("repeated", "NetStateRule", "exclude", 33),
        ("repeated", "float", "loss_weight", 35),
    ],
    "ConcatParameter": [
        ("optional", "uint32", "concat_dim", 1, ("default", "1")),
        ("optional", "int32", "axis", 2, ("default", "1")),
    ],
    "ConvolutionParameter": [
        ("optional", "uint32", "num_output", 1),
        ("optional", "bool", "bias_term", 2, ("default", "true")),
        ("repeated", "uint32", "pad", 3),
        ("repeated", "uint32", "kernel_size", 4),
        ("optional", "uint32", "group", 5, ("default", "1")),
        ("repeated", "uint32", "stride", 6),
        ("optional", "FillerParameter", "weight_filler", 7),
        ("optional", "FillerParameter", "bias_filler", 8),
        ("optional", "uint32", "pad_h", 9, ("default", "0")),
        ("optional", "uint32", "pad_w", 10, ("default", "0")),
        ("optional", "uint32", "kernel_h", 11),
        ("optional", "uint32", "kernel_w", 12),
        ("optional", "uint32", "stride_h", 13),
        ("optional", "uint32", "stride_w", 14),
        ("repeated", "uint32", "dilation", 18),
    ],
    "DropoutParameter": [("optional", "float", "dropout_ratio", 1, ("default", "0.5"))],
    "InnerProductParameter": [
        ("optional", "uint32", "num_output", 1),
        ("optional", "bool", "bias_term", 2, ("default", "true")),
        ("optional", "FillerParameter", "weight_filler", 3),
        ("optional", "FillerParameter", "bias_filler", 4),
        ("optional", "int32", "axis", 5, ("default", "1")),
        ("optional", "bool", "transpose", 6, ("default", "false")),
    ],
    "InputParameter": [("repeated", "BlobShape", "shape", 1)],
    "LRNParameter": [
        ("optional", "uint32", "local_size", 1, ("default", "5")),
        ("optional", "float", "alpha", 2, ("default", "1")),
        ("optional", "float", "beta", 3, ("default", "0.75")),
        ("optional", "enum:NormRegion", "norm_region", 4, ("default", "ACROSS_CHANNELS")),
        ("optional", "float", "k", 5, ("default", "1")),
    ],
    "PoolingParameter": [
        ("optional", "enum:PoolMethod", "pool", 1, ("default", "MAX")),
        ("optional", "uint32", "kernel_size", 2),
        ("optional", "uint32", "stride", 3, ("default", "1")),
        ("optional", "uint32", "pad", 4, ("default", "0")),
        ("optional", "uint32", "kernel_h", 5),
        ("optional", "uint32", "kernel_w", 6),
        ("optional", "uint32", "stride_h", 7),
        ("optional", "uint32", "stride_w", 8),
        ("optional", "uint32", "pad_h", 9, ("default", "0")),
        ("optional", "uint32", "pad_w", 10, ("default", "0")),
        ("optional", "bool", "global_pooling", 12, ("default", "false")),
        ("optional", "enum:RoundMode", "round_mode", 13, ("default", "CEIL")),
    ],
}

# (message, enum) -> values. Phase is top-level in caffe.proto; it is nested in NetStateRule here (same wire format).
_ENUMS: dict[tuple[str, str], dict[str, int]] = {
    ("NetStateRule", "Phase"): {"TRAIN": 0, "TEST": 1},
    ("LRNParameter", "NormRegion"): {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    ("PoolingParameter", "PoolMethod"): {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    ("PoolingParameter", "RoundMode"): {"CEIL": 0, "FLOOR": 1},
    ("V1LayerParameter", "LayerType"): {
        "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
        "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
        "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
        "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
        "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
        "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22,
        "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
    },
}  # fmt: skip

# V1 enum layer types -> the current string types (Caffe's UpgradeV1LayerType, for the types GoogLeNet uses).
V1_TYPE_NAMES = {
    "CONCAT": "Concat",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "POOLING": "Pooling",
    "RELU": "ReLU",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "ACCURACY": "Accuracy",
    "SPLIT": "Split",
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="kgooglenet_caffe_subset.proto", package=_PACKAGE, syntax="proto2")
    for message_name, fields in _MESSAGES.items():
        message = fdp.message_type.add(name=message_name)
        for (owner, enum_name), values in _ENUMS.items():
            if owner == message_name:
                enum = message.enum_type.add(name=enum_name)
                for value_name, number in values.items():
                    enum.value.add(name=value_name, number=number)
        for label, type_name, name, number, *options in fields:
            field = message.field.add(name=name, number=number)
            field.label = _F.LABEL_REPEATED if label == "repeated" else _F.LABEL_OPTIONAL
            if type_name in _TYPES:
                field.type = _TYPES[type_name]
            elif type_name.startswith("enum:"):
                field.type = _F.TYPE_ENUM
                field.type_name = f".{_PACKAGE}.{message_name}.{type_name[5:]}"
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{type_name}"
            for option in options:
                if option == "packed":
                    field.options.packed = True
                else:
                    field.default_value = option[1]
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


NetParameter = _message_class("NetParameter")
LayerParameter = _message_class("LayerParameter")
V1LayerParameter = _message_class("V1LayerParameter")
BlobProto = _message_class("BlobProto")
BlobShape = _message_class("BlobShape")


def parse_prototxt(text: str):
    """A text-format NetParameter (a `.prototxt`), skipping fields this subset does not declare."""
    net = NetParameter()
    text_format.Parse(text, net, allow_unknown_field=True)
    return net


def to_prototxt(net) -> str:
    """The text format of a NetParameter (readable by Caffe and OpenCV)."""
    return text_format.MessageToString(net)


def v1_type_name(layer) -> str:
    """The current string type of a V1 layer ("Convolution" for CONVOLUTION), or the enum name when unmapped."""
    enum_name = V1LayerParameter.LayerType.Name(layer.type)
    return V1_TYPE_NAMES.get(enum_name, enum_name)


__all__ = [
    "BlobProto",
    "BlobShape",
    "LayerParameter",
    "NetParameter",
    "V1LayerParameter",
    "parse_prototxt",
    "to_prototxt",
    "v1_type_name",
]
