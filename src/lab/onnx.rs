//! ONNX export of a shipped network, layer for layer (Conv, BatchNormalization, Relu, Add,
//! GlobalAveragePool, Flatten, Gemm; opset 13), for one purpose: timing ctxr against
//! onnxruntime-web on the same network and weights (`./build.sh bench`, issue 16). Nothing is
//! folded here, so that the other runtime's own graph optimisations count in its time, as they
//! would for anyone who exported the model.
//!
//! The file is written with a minimal protobuf encoder: the few ONNX messages and fields used
//! are numbered as in onnx.proto, which is stable across ONNX versions.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use ctxr::model::Cnn;
use ctxr::model::cnn::ConvBn;

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading {name} failed: {reason}")]
    Read { name: String, reason: String },
    #[error("{0}: this padding cannot be written as ONNX pads")]
    Padding(String),
}

/// The ONNX model bytes of `model` for `[N, 1, size, size]` inputs (N free), output `logits`.
pub fn export(model: &Cnn, size: usize) -> Result<Vec<u8>, ExportError> {
    let mut g = Graph::default();
    let (stem, stages, head) = model.parts();
    let mut x = g.conv_bn("stem", stem, "input")?;
    x = g.node("Relu", "stem_relu", &[&x], vec![]);
    for (i, block) in stages.iter().enumerate() {
        let (a, b, down) = block.parts();
        let name = format!("stage{}", i + 1);
        let shortcut = match down {
            Some(d) => g.conv_bn(&format!("{name}.down"), d, &x)?,
            None => x.clone(),
        };
        let y = g.conv_bn(&format!("{name}.a"), a, &x)?;
        let y = g.node("Relu", &format!("{name}.a_relu"), &[&y], vec![]);
        let y = g.conv_bn(&format!("{name}.b"), b, &y)?;
        let y = g.node("Add", &format!("{name}.add"), &[&y, &shortcut], vec![]);
        x = g.node("Relu", &format!("{name}.relu"), &[&y], vec![]);
    }
    let pooled = g.node("GlobalAveragePool", "pool", &[&x], vec![]);
    let flat = g.node("Flatten", "flatten", &[&pooled], vec![Attr::Int("axis", 1)]);
    let [features, classes] = head.weight.val().dims();
    let w = g.initializer("head.weight", &[features, classes], head.weight.val())?;
    let bias = match &head.bias {
        Some(b) => g.initializer("head.bias", &[classes], b.val())?,
        None => g.constant("head.bias", &[classes], vec![0.0; classes]),
    };
    g.nodes.push(node("Gemm", "head", &[&flat, &w, &bias], "logits", vec![]));
    Ok(g.model(size, classes))
}

enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Vec<u8>>,
    initializers: Vec<Vec<u8>>,
}

impl Graph {
    /// A node whose single output is named after it.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.nodes.push(node(op, name, inputs, name, attrs));
        name.to_string()
    }

    fn initializer<const D: usize>(&mut self, name: &str, dims: &[usize], t: Tensor<D>) -> Result<String, ExportError> {
        let values = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| ExportError::Read { name: name.into(), reason: format!("{e:?}") })?;
        Ok(self.constant(name, dims, values))
    }

    fn constant(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        let mut t = Vec::new();
        for &d in dims {
            varint_field(&mut t, 1, d as u64); // dims
        }
        varint_field(&mut t, 2, 1); // data_type FLOAT
        bytes_field(&mut t, 8, name.as_bytes());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(&mut t, 9, &raw); // raw_data, little-endian
        self.initializers.push(t);
        name.to_string()
    }

    fn conv_bn(&mut self, name: &str, cb: &ConvBn, input: &str) -> Result<String, ExportError> {
        let (conv, bn) = cb.parts();
        let y = self.conv(name, conv, input)?;
        self.batch_norm(name, bn, &y)
    }

    fn conv(&mut self, name: &str, conv: &Conv2d, input: &str) -> Result<String, ExportError> {
        let dims = conv.weight.val().dims();
        let w = self.initializer(&format!("{name}.weight"), &dims, conv.weight.val())?;
        let mut inputs = vec![input.to_string(), w];
        if let Some(b) = &conv.bias {
            inputs.push(self.initializer(&format!("{name}.bias"), &[dims[0]], b.val())?);
        }
        let pads = match conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => vec![t as i64, l as i64, b as i64, r as i64],
            PaddingConfig2d::Valid => vec![0; 4],
            _ => return Err(ExportError::Padding(name.into())),
        };
        let attrs = vec![
            Attr::Ints("kernel_shape", vec![dims[2] as i64, dims[3] as i64]),
            Attr::Ints("strides", conv.stride.iter().map(|&s| s as i64).collect()),
            Attr::Ints("dilations", conv.dilation.iter().map(|&s| s as i64).collect()),
            Attr::Int("group", conv.groups as i64),
            Attr::Ints("pads", pads),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node("Conv", &format!("{name}.conv"), &refs, attrs))
    }

    fn batch_norm(&mut self, name: &str, bn: &BatchNorm, input: &str) -> Result<String, ExportError> {
        let c = bn.gamma.val().dims()[0];
        let gamma = self.initializer(&format!("{name}.bn.gamma"), &[c], bn.gamma.val())?;
        let beta = self.initializer(&format!("{name}.bn.beta"), &[c], bn.beta.val())?;
        let mean = self.initializer(&format!("{name}.bn.mean"), &[c], bn.running_mean.value())?;
        let var = self.initializer(&format!("{name}.bn.var"), &[c], bn.running_var.value())?;
        Ok(self.node("BatchNormalization", &format!("{name}.bn"), &[input, &gamma, &beta, &mean, &var], vec![Attr::Float("epsilon", bn.epsilon as f32)]))
    }

    fn model(self, size: usize, classes: usize) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in &self.nodes {
            bytes_field(&mut graph, 1, n);
        }
        bytes_field(&mut graph, 2, b"ctxr");
        for t in &self.initializers {
            bytes_field(&mut graph, 5, t);
        }
        bytes_field(&mut graph, 11, &value_info("input", &[Dim::Param("N"), Dim::Value(1), Dim::Value(size), Dim::Value(size)]));
        bytes_field(&mut graph, 12, &value_info("logits", &[Dim::Param("N"), Dim::Value(classes)]));
        let mut opset = Vec::new();
        bytes_field(&mut opset, 1, b"");
        varint_field(&mut opset, 2, 13);
        let mut model = Vec::new();
        varint_field(&mut model, 1, 8); // ir_version
        bytes_field(&mut model, 2, b"ctxr");
        bytes_field(&mut model, 7, &graph);
        bytes_field(&mut model, 8, &opset);
        model
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: Vec<Attr>) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        bytes_field(&mut n, 1, i.as_bytes());
    }
    bytes_field(&mut n, 2, output.as_bytes());
    bytes_field(&mut n, 3, name.as_bytes());
    bytes_field(&mut n, 4, op.as_bytes());
    for a in attrs {
        let mut m = Vec::new();
        match a {
            Attr::Int(name, v) => {
                bytes_field(&mut m, 1, name.as_bytes());
                varint_field(&mut m, 3, v as u64);
                varint_field(&mut m, 20, 2); // INT
            }
            Attr::Ints(name, vs) => {
                bytes_field(&mut m, 1, name.as_bytes());
                for v in vs {
                    varint_field(&mut m, 8, v as u64);
                }
                varint_field(&mut m, 20, 7); // INTS
            }
            Attr::Float(name, v) => {
                bytes_field(&mut m, 1, name.as_bytes());
                tag(&mut m, 2, 5);
                m.extend_from_slice(&v.to_le_bytes());
                varint_field(&mut m, 20, 1); // FLOAT
            }
        }
        bytes_field(&mut n, 5, &m);
    }
    n
}

enum Dim {
    Value(usize),
    Param(&'static str),
}

fn value_info(name: &str, dims: &[Dim]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Dim::Value(v) => varint_field(&mut dim, 1, *v as u64),
            Dim::Param(p) => bytes_field(&mut dim, 2, p.as_bytes()),
        }
        bytes_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    varint_field(&mut tensor, 1, 1); // elem_type FLOAT
    bytes_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes_field(&mut ty, 1, &tensor);
    let mut v = Vec::new();
    bytes_field(&mut v, 1, name.as_bytes());
    bytes_field(&mut v, 2, &ty);
    v
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 0);
    varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_written_as_protobuf_does() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut f = Vec::new();
        bytes_field(&mut f, 7, b"ab");
        assert_eq!(f, [0x3a, 2, b'a', b'b']);
    }
}
