//! Pipeline: any number of supported transformers ([`super::preprocess`]) followed by one
//! supported final estimator.

use super::preprocess::{is_transformer, pipeline_steps, transformer};
use super::{ExtractError, Obj, final_estimator};
use crate::estimator::{Model, Step, steps_width};
use crate::pickle::Value;

/// Extracts `Pipeline([transformer, ...,] estimator)`.
pub fn extract(pipeline: &Obj<'_>) -> Result<Model, ExtractError> {
    let steps = pipeline_steps(pipeline)?;
    let names: Vec<&str> = steps.iter().map(|s| s.class_name()).collect();
    let kind = format!("Pipeline({})", names.join(", "));
    let Some((last, transformers)) = steps.split_last() else {
        return Err(ExtractError::Unsupported(format!(
            "{kind}: a Pipeline without a final estimator"
        )));
    };
    if is_transformer(last.class_name()) {
        return Err(ExtractError::Unsupported(format!(
            "{kind}: the last step must be a supported regressor or classifier"
        )));
    }
    if let Some(other) = transformers
        .iter()
        .find(|t| !is_transformer(t.class_name()))
    {
        return Err(ExtractError::Unsupported(format!(
            "{kind}: {} ({}) is not a supported transformer",
            other.class_name(),
            other.class
        )));
    }
    let fitted = final_estimator(last)?;
    let accepts_missing = fitted.meta.accepts_missing;
    // Walk the transformers back from the estimator: each must give the next one's width.
    let mut chain = Vec::new();
    let mut meta = fitted.meta;
    let estimator_meta_version = meta.sklearn_version.clone();
    let mut width = meta.n_features;
    for (i, step) in transformers.iter().enumerate().rev() {
        let t = transformer(step, Some(width))?;
        let reads_columns = matches!(t.steps.as_slice(), [Step::Columns(_)]);
        if t.strings_out || (t.strings_in && (i > 0 || !reads_columns)) {
            return Err(ExtractError::Unsupported(format!(
                "{kind}: string columns are only supported inside the first step, a ColumnTransformer"
            )));
        }
        let sparse = ["sparse_output", "sparse"]
            .iter()
            .any(|attr| matches!(step.get(attr), Some(Value::Bool(true))));
        if step.class_name() == "OneHotEncoder" && sparse {
            return Err(ExtractError::Unsupported(format!(
                "{kind}: OneHotEncoder with sparse output outside a ColumnTransformer"
            )));
        }
        let out = steps_width(&t.steps, t.meta.n_features)
            .ok_or_else(|| step.invalid("", "its parameters do not fit its input"))?;
        if out != width {
            return Err(step.invalid(
                "n_features_in_",
                format!("the step gives {out} columns, the next step takes {width}"),
            ));
        }
        width = t.meta.n_features;
        meta = t.meta;
        chain.push(t.steps);
    }
    let steps: Vec<_> = chain.into_iter().rev().flatten().collect();
    Ok(Model {
        kind,
        feature_names: meta.feature_names,
        n_features: meta.n_features,
        n_targets: fitted.n_targets,
        sklearn_version: pipeline
            .str("_sklearn_version")
            .map(str::to_owned)
            .unwrap_or(estimator_meta_version),
        steps,
        estimator: fitted.estimator,
        classifier: fitted.classifier,
        accepts_missing,
    })
}

#[cfg(test)]
mod tests {
    use super::super::extract as extract_model;
    use crate::estimator::{ArithOp, Estimator, Step};
    use crate::pickle::{Dtype, Global, Graph, NdArray, NodeId, Value};

    /// Builds small estimator graphs by hand.
    #[derive(Default)]
    struct Builder(Graph);

    impl Builder {
        fn add(&mut self, value: Value) -> NodeId {
            self.0.nodes.push(value);
            NodeId(self.0.nodes.len() - 1)
        }
        fn str(&mut self, s: &str) -> NodeId {
            self.add(Value::Str(s.into()))
        }
        fn f8(&mut self, values: &[f64]) -> NodeId {
            self.add(Value::NdArray(NdArray {
                dtype: Dtype {
                    kind: 'f',
                    itemsize: 8,
                    fields: vec![],
                },
                shape: vec![values.len()],
                data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                objects: vec![],
            }))
        }
        fn object(&mut self, name: &str, attrs: Vec<(&str, Value)>) -> NodeId {
            let mut items = Vec::new();
            for (key, value) in attrs {
                let key = self.str(key);
                let value = self.add(value);
                items.push((key, value));
            }
            let state = self.add(Value::Dict(items));
            self.add(Value::Object {
                class: Global {
                    module: "sklearn.test".into(),
                    name: name.into(),
                },
                args: vec![],
                state: Some(state),
            })
        }
        fn linear(&mut self) -> NodeId {
            let coef = self.f8(&[1.0, 2.0]);
            let coef = self.0.nodes[coef.0].clone();
            self.object(
                "LinearRegression",
                vec![
                    ("coef_", coef),
                    ("intercept_", Value::Float(0.5)),
                    ("n_features_in_", Value::Int(2)),
                    ("_sklearn_version", Value::Str("1.9.1".into())),
                ],
            )
        }
        fn scaler(&mut self, width: usize, with_std: bool) -> NodeId {
            let mean = self.f8(&vec![1.0; width]);
            let mean = self.0.nodes[mean.0].clone();
            let scale = self.f8(&vec![2.0; width]);
            let scale = match with_std {
                true => self.0.nodes[scale.0].clone(),
                false => Value::None,
            };
            self.object(
                "StandardScaler",
                vec![
                    ("with_mean", Value::Bool(true)),
                    ("with_std", Value::Bool(with_std)),
                    ("mean_", mean),
                    ("scale_", scale),
                    ("n_features_in_", Value::Int(width as i128)),
                ],
            )
        }
        fn pipeline(mut self, steps: Vec<NodeId>) -> Graph {
            let mut pairs = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                let name = self.str(&format!("s{i}"));
                pairs.push(self.add(Value::Tuple(vec![name, step])));
            }
            let list = Value::List(pairs);
            let root = self.object("Pipeline", vec![("steps", list)]);
            self.0.root = Some(root);
            self.0
        }
    }

    #[test]
    fn passthrough_and_none_steps_are_skipped() {
        let mut b = Builder::default();
        let pass = b.str("passthrough");
        let linear = b.linear();
        let model = extract_model(&b.pipeline(vec![pass, linear])).unwrap();
        assert_eq!(model.kind, "Pipeline(LinearRegression)");
        assert!(model.steps.is_empty());
        assert!(matches!(model.estimator, Estimator::Linear(_)));

        let mut b = Builder::default();
        let scaler = b.scaler(2, true);
        let none = b.add(Value::None);
        let linear = b.linear();
        let model = extract_model(&b.pipeline(vec![scaler, none, linear])).unwrap();
        assert_eq!(model.kind, "Pipeline(StandardScaler, LinearRegression)");
        assert_eq!(
            model.steps,
            [
                Step::Arith {
                    op: ArithOp::Sub,
                    values: vec![1.0, 1.0]
                },
                Step::Arith {
                    op: ArithOp::Div,
                    values: vec![2.0, 2.0]
                }
            ]
        );
    }

    #[test]
    fn with_std_false_has_no_scale() {
        let mut b = Builder::default();
        let scaler = b.scaler(2, false);
        let linear = b.linear();
        let model = extract_model(&b.pipeline(vec![scaler, linear])).unwrap();
        assert_eq!(
            model.steps,
            [Step::Arith {
                op: ArithOp::Sub,
                values: vec![1.0, 1.0]
            }]
        );
    }

    #[test]
    fn transformer_chains_of_any_length() {
        let mut b = Builder::default();
        let s1 = b.scaler(2, true);
        let s2 = b.scaler(2, false);
        let linear = b.linear();
        let model = extract_model(&b.pipeline(vec![s1, s2, linear])).unwrap();
        assert_eq!(
            model.kind,
            "Pipeline(StandardScaler, StandardScaler, LinearRegression)"
        );
        assert_eq!(model.steps.len(), 3);
        assert_eq!(model.nullable(), [false, false]);
    }

    #[test]
    fn other_shapes_are_refused_by_name() {
        let mut b = Builder::default();
        let s1 = b.scaler(2, true);
        let poly = b.object("PolynomialFeatures", vec![]);
        let linear = b.linear();
        let err = extract_model(&b.pipeline(vec![s1, poly, linear]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Pipeline(StandardScaler, PolynomialFeatures, LinearRegression)")
                && err.contains("PolynomialFeatures (sklearn.test.PolynomialFeatures) is not a supported transformer"),
            "{err}"
        );

        let mut b = Builder::default();
        let s1 = b.scaler(2, true);
        let err = extract_model(&b.pipeline(vec![s1]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the last step must be a supported regressor"),
            "{err}"
        );

        let mut b = Builder::default();
        let s1 = b.scaler(3, true);
        let linear = b.linear();
        let err = extract_model(&b.pipeline(vec![s1, linear]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mean_") && err.contains("3 values for 2 features"),
            "{err}"
        );

        let mut b = Builder::default();
        let knn = b.object("KNeighborsRegressor", vec![]);
        let err = extract_model(&b.pipeline(vec![knn]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KNeighborsRegressor"), "{err}");
    }
}
