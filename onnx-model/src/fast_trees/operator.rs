//! The ONNX Runtime side: an operator for `ai.onnx.ml` `TreeEnsemble` in double whose
//! kernel is a compiled [`Ensemble`]. Registered in a session's `ai.onnx.ml` domain, it is
//! found before ONNX Runtime's own kernel; its kernel reads the node's attributes through
//! ONNX Runtime, so the model file is not touched.

use ort::operator::{
    ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput, OperatorOutput,
};
use ort::value::{TensorElementType, TensorValueType, ValueRef};

use super::compile::{Attributes, SUM};
use super::ensemble::{Ensemble, Helpers, MIN_ROWS_PER_THREAD};

/// The domain and name of the operator this kernel computes.
pub const DOMAIN: &str = "ai.onnx.ml";
pub const OPERATOR: &str = "TreeEnsemble";

/// A domain holding the `TreeEnsemble` operator, for `SessionBuilder::with_operators`; its
/// kernels take up to `threads` threads for a call with many rows.
pub fn domain(threads: usize) -> ort::Result<OperatorDomain> {
    OperatorDomain::new(DOMAIN)?.add(TreeEnsembleOperator { threads })
}

struct TreeEnsembleOperator {
    threads: usize,
}

impl Operator for TreeEnsembleOperator {
    type Kernel<'attr> = TreeEnsembleKernel;

    fn name(&self) -> &str {
        OPERATOR
    }

    fn versions(&self) -> std::ops::RangeInclusive<u32> {
        5..=5
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [OperatorInput::required(TensorElementType::Float64)]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float64)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<TreeEnsembleKernel> {
        let attributes = read_attributes(ctx)?;
        let ensemble = Ensemble::compile(&attributes)
            .map_err(|e| ort::Error::new(format!("TreeEnsemble: {e}")))?;
        Ok(TreeEnsembleKernel {
            ensemble,
            threads: self.threads,
            helpers: None,
        })
    }
}

/// Reads the attributes `Ensemble::compile` needs; absent optional ones take ONNX's defaults.
fn read_attributes(ctx: &KernelContext<'_>) -> ort::Result<Attributes> {
    let ints = |name: &str| -> ort::Result<Vec<i64>> {
        ctx.get::<Vec<i64>>(name)
            .ok_or_else(|| ort::Error::new(format!("TreeEnsemble: attribute {name} is missing")))
    };
    let doubles = |name: &str| -> ort::Result<Option<Vec<f64>>> {
        match ctx.get::<ValueRef<'_, TensorValueType<f64>>>(name) {
            Some(t) => Ok(Some(t.extract_tensor().1.to_vec())),
            None => Ok(None),
        }
    };
    let required_doubles = |name: &str| -> ort::Result<Vec<f64>> {
        doubles(name)?.ok_or_else(|| {
            ort::Error::new(format!(
                "TreeEnsemble: attribute {name} is missing or not a double tensor"
            ))
        })
    };
    let modes = ctx
        .get::<ValueRef<'_, TensorValueType<u8>>>("nodes_modes")
        .map(|t| t.extract_tensor().1.to_vec())
        .ok_or_else(|| ort::Error::new("TreeEnsemble: attribute nodes_modes is missing"))?;
    Ok(Attributes {
        n_targets: ctx
            .get::<i64>("n_targets")
            .ok_or_else(|| ort::Error::new("TreeEnsemble: attribute n_targets is missing"))?,
        aggregate_function: ctx.get::<i64>("aggregate_function").unwrap_or(SUM),
        post_transform: ctx.get::<i64>("post_transform").unwrap_or(0),
        tree_roots: ints("tree_roots")?,
        nodes_featureids: ints("nodes_featureids")?,
        nodes_splits: required_doubles("nodes_splits")?,
        nodes_modes: modes,
        nodes_truenodeids: ints("nodes_truenodeids")?,
        nodes_trueleafs: ints("nodes_trueleafs")?,
        nodes_falsenodeids: ints("nodes_falsenodeids")?,
        nodes_falseleafs: ints("nodes_falseleafs")?,
        nodes_missing_value_tracks_true: ctx
            .get::<Vec<i64>>("nodes_missing_value_tracks_true")
            .unwrap_or_default(),
        membership_values: doubles("membership_values")?.unwrap_or_default(),
        leaf_targetids: ints("leaf_targetids")?,
        leaf_weights: required_doubles("leaf_weights")?,
    })
}

struct TreeEnsembleKernel {
    ensemble: Ensemble,
    threads: usize,
    /// Started at the first call with rows enough for more than one thread.
    helpers: Option<Helpers>,
}

impl Kernel for TreeEnsembleKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let input = ctx
            .input(0)?
            .ok_or_else(|| ort::Error::new("TreeEnsemble: no input"))?;
        let (shape, x) = input.try_extract_tensor::<f64>()?;
        let (rows, columns) = match **shape {
            [rows, columns] => (rows, columns),
            [columns] => (1, columns),
            _ => {
                return Err(ort::Error::new(format!(
                    "TreeEnsemble: input of shape {shape:?}, expected [N, F]"
                )));
            }
        };
        let (rows, columns) = (dimension(rows)?, dimension(columns)?);
        let targets = self.ensemble.n_targets();
        let mut output = ctx
            .output(0, vec![rows as i64, targets as i64])?
            .ok_or_else(|| ort::Error::new("TreeEnsemble: no output"))?;
        let (_, out) = output.try_extract_tensor_mut::<f64>()?;
        if self.helpers.is_none() && self.threads > 1 && rows >= 2 * MIN_ROWS_PER_THREAD {
            self.helpers = Helpers::new(self.threads);
        }
        self.ensemble
            .evaluate_on(self.helpers.as_ref(), x, rows, columns, out)
            .map_err(|e| ort::Error::new(format!("TreeEnsemble: {e}")))
    }
}

fn dimension(d: i64) -> ort::Result<usize> {
    usize::try_from(d).map_err(|_| ort::Error::new(format!("TreeEnsemble: dimension {d}")))
}
