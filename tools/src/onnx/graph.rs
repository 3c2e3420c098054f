//! A small builder for ONNX graphs: named initialisers, nodes and attributes.

use super::proto::{
    AttributeProto, NodeProto, TensorProto, attribute_proto::AttributeType, tensor_proto::DataType,
};

/// Collects the nodes and initialisers of one graph and hands out unique value names.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    next_id: usize,
}

impl GraphBuilder {
    /// Returns a value name not used before in this graph, e.g. `scaled_3`.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.next_id += 1;
        format!("{stem}_{}", self.next_id)
    }

    /// Adds a double initialiser of shape `dims` and returns its name.
    pub fn constant_f64(&mut self, stem: &str, dims: &[usize], values: &[f64]) -> String {
        let name = self.fresh(stem);
        let mut tensor = tensor_f64(dims, values);
        tensor.name = Some(name.clone());
        self.initializers.push(tensor);
        name
    }

    /// Adds a string initialiser of shape `dims` and returns its name.
    pub fn constant_str(&mut self, stem: &str, dims: &[usize], values: &[String]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::String as i32),
            string_data: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds an int64 initialiser of shape `dims` and returns its name.
    pub fn constant_i64(&mut self, stem: &str, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh(stem);
        let mut tensor = tensor_i64(dims, values);
        tensor.name = Some(name.clone());
        self.initializers.push(tensor);
        name
    }

    /// Adds a node computing one output from `inputs` and returns the output's name.
    pub fn node(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(&op_type.to_lowercase());
        self.node_into(op_type, domain, inputs, attributes, &output);
        output
    }

    /// `Cast` of `x` to `to`.
    pub fn cast(&mut self, x: &str, to: DataType) -> String {
        self.node("Cast", "", &[x], vec![attr_int("to", to as i64)])
    }

    /// `x` (double) rounded to float32 and back: a model that compares in float32 (sklearn's
    /// trees, XGBoost) sees exactly the value it would.
    pub fn round_to_float32(&mut self, x: &str) -> String {
        let float = self.cast(x, DataType::Float);
        self.cast(&float, DataType::Double)
    }

    /// Adds a node writing its single output to the given name (e.g. the graph output).
    pub fn node_into(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: &str,
    ) {
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(name),
            op_type: Some(op_type.to_string()),
            domain: Some(domain.to_string()),
            attribute: attributes,
            ..Default::default()
        });
    }
}

/// A double tensor of shape `dims` (little-endian raw data).
pub fn tensor_f64(dims: &[usize], values: &[f64]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), values.len());
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Double as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 tensor of shape `dims` (little-endian raw data).
pub fn tensor_i64(dims: &[usize], values: &[i64]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), values.len());
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A 1-D uint8 tensor.
pub fn tensor_u8(values: &[u8]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: Some(DataType::Uint8 as i32),
        raw_data: Some(values.to_vec()),
        ..Default::default()
    }
}

/// An `INT` attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

/// A `STRINGS` attribute.
pub fn attr_strings(name: &str, values: &[String]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Strings as i32),
        strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A `TENSOR` attribute.
pub fn attr_tensor(name: &str, tensor: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(tensor),
        ..Default::default()
    }
}
