//! Small helpers to build ONNX protobuf messages by hand (the export and the tests use them), in the spirit of
//! Python's `onnx.helper`.

use relprop_core::Tensor;

use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::type_proto::{self, Value as TypeValue};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The symbolic batch dimension written by [`value_info`].
pub const BATCH_DIM: &str = "N";

/// A standard-domain node.
pub fn make_node(op_type: &str, name: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op_type.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

/// A float32 initializer from a relprop tensor (little-endian `raw_data`).
pub fn make_tensor(name: &str, t: &Tensor) -> TensorProto {
    make_tensor_f32(name, &t.shape, &t.data)
}

/// A float32 initializer from its shape and row-major values.
pub fn make_tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 initializer (shapes, axes, pads).
pub fn make_tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(ty as i32), ..Default::default() }
}

/// An int attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}

/// A float attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { f: Some(v), ..attr(name, AttributeType::Float) }
}

/// A list-of-ints attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

/// A list-of-floats attribute.
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { floats: v.to_vec(), ..attr(name, AttributeType::Floats) }
}

/// A string attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { s: Some(v.as_bytes().to_vec()), ..attr(name, AttributeType::String) }
}

/// A tensor attribute (the `value` of a `Constant` node).
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { t: Some(t), ..attr(name, AttributeType::Tensor) }
}

/// A float32 tensor value with the symbolic batch [`BATCH_DIM`] first, then the fixed per-sample shape.
pub fn value_info(name: &str, per_sample: &[usize]) -> ValueInfoProto {
    let batch = Dimension { value: Some(dimension::Value::DimParam(BATCH_DIM.into())), ..Default::default() };
    let dims = per_sample.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d as i64)), ..Default::default() });
    value_info_dims(name, std::iter::once(batch).chain(dims).collect())
}

/// A float32 tensor value with explicit dimensions (for hand-written tests of odd shapes).
pub fn value_info_dims(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    let tensor = type_proto::Tensor { elem_type: Some(DataType::Float as i32), shape: Some(TensorShapeProto { dim: dims }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(TypeValue::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// A graph from its parts.
pub fn make_graph(
    name: &str,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    initializers: Vec<TensorProto>,
) -> GraphProto {
    GraphProto { name: Some(name.into()), node: nodes, input: inputs, output: outputs, initializer: initializers, ..Default::default() }
}

/// A model importing the standard domain at `opset`, with the IR version that opset came with (8 up to
/// opset 18, 9 for 19-20, 10 after).
pub fn make_model(graph: GraphProto, opset: i64) -> ModelProto {
    let ir_version = match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    };
    ModelProto {
        ir_version: Some(ir_version),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("relprop".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    }
}
