//! LightGBM models, read without LightGBM: the text format a booster saves ([`text`]), turned
//! into an [`Estimator::LightGbm`] with its objective's link, as `GBDT::Predict` computes it.
//!
//! Two sources use this: native model files (`Booster.save_model`, [`native_model`]) and the
//! booster inside a pickled `LGBMRegressor` / `LGBMClassifier` (`crate::sklearn`, which keeps
//! the model text in the booster's state). Objectives ([`Objective::of`]): the regression
//! family (identity), poisson / gamma / tweedie (`exp`), cross_entropy (sigmoid), binary
//! (sigmoid with its `sigmoid:` scale), multiclass (softmax) and multiclassova (a sigmoid per
//! class). Refused with a message naming them: `reg_sqrt`, ranking and other objectives, linear
//! trees, random-forest boosting (`average_output`), models trained on pandas category
//! columns, and a model without an objective (a custom one).

pub mod text;

use onnx_model::contract::ClassLabel;

use crate::estimator::{
    Classifier, Estimator, LabelRule, LightGbm, LightGbmChild, LightGbmMissing, LightGbmNode,
    LightGbmOutput, LightGbmTest, LightGbmTree, Model, Probabilities,
};
use text::{Booster, MissingType, TextError};

/// Why a LightGBM model was refused.
#[derive(Debug, thiserror::Error)]
pub enum LightGbmError {
    /// The model text is malformed or over a limit.
    #[error(transparent)]
    Text(#[from] TextError),
    /// A valid model this converter does not serve (the message names what).
    #[error("unsupported LightGBM model: {0}")]
    Unsupported(String),
}

fn unsupported(reason: impl Into<String>) -> LightGbmError {
    LightGbmError::Unsupported(reason.into())
}

/// What a booster's objective makes of its raw scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// One raw score, one prediction.
    Regression(LightGbmOutput),
    /// `binary`: `p = 1 / (1 + exp(-scale * raw))`.
    Binary { scale: f64 },
    /// `multiclass`: softmax over `n_classes` raw scores.
    Multiclass { n_classes: usize },
    /// `multiclassova`: `1 / (1 + exp(-scale * raw_k))` per class, not normalised.
    MulticlassOva { n_classes: usize, scale: f64 },
}

impl Objective {
    /// Reads the booster's `objective=` line (canonical names, as LightGBM writes them) and
    /// checks it against `num_class` and `num_tree_per_iteration`.
    pub fn of(booster: &Booster) -> Result<Objective, LightGbmError> {
        let line = booster.objective.as_deref().ok_or_else(|| {
            unsupported("the model records no objective (trained with a custom objective?)")
        })?;
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let name = words.next().unwrap_or("");
        let mut sigmoid = None;
        let mut num_class = None;
        for word in words {
            match word.split_once(':') {
                Some(("sigmoid", v)) => sigmoid = v.parse::<f64>().ok(),
                Some(("num_class", v)) => num_class = v.parse::<usize>().ok(),
                _ if word == "sqrt" => {
                    return Err(unsupported(format!(
                        "objective {name} with reg_sqrt (predictions squared back)"
                    )));
                }
                _ => {}
            }
        }
        let scale = || {
            sigmoid
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    LightGbmError::Text(text::TextError {
                        place: "header, key objective".into(),
                        reason: format!("`{name}` needs a positive `sigmoid:` value"),
                    })
                })
        };
        let objective = match name {
            "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" => {
                Objective::Regression(LightGbmOutput::Identity)
            }
            "poisson" | "gamma" | "tweedie" => Objective::Regression(LightGbmOutput::Exp),
            "cross_entropy" => Objective::Regression(LightGbmOutput::Sigmoid { scale: 1.0 }),
            "binary" => Objective::Binary { scale: scale()? },
            "multiclass" => Objective::Multiclass {
                n_classes: booster.num_class,
            },
            "multiclassova" => Objective::MulticlassOva {
                n_classes: booster.num_class,
                scale: scale()?,
            },
            "lambdarank" | "rank_xendcg" => {
                return Err(unsupported(format!("ranking objective {name}")));
            }
            other => {
                let other = other.chars().take(60).collect::<String>();
                return Err(unsupported(format!("objective `{other}`")));
            }
        };
        let (classes, per_iteration) = match objective {
            Objective::Multiclass { n_classes } | Objective::MulticlassOva { n_classes, .. } => {
                if num_class.is_some_and(|k| k != n_classes) || n_classes < 2 {
                    return Err(LightGbmError::Text(TextError {
                        place: "header, key objective".into(),
                        reason: format!("`{line}` does not fit num_class={n_classes}"),
                    }));
                }
                (n_classes, n_classes)
            }
            _ => (1, 1),
        };
        if booster.num_class != classes || booster.num_tree_per_iteration != per_iteration {
            return Err(LightGbmError::Text(TextError {
                place: "header".into(),
                reason: format!(
                    "objective {name} with num_class={} and num_tree_per_iteration={}",
                    booster.num_class, booster.num_tree_per_iteration
                ),
            }));
        }
        Ok(objective)
    }

    /// The objective's canonical name, for descriptions.
    pub fn name(booster: &Booster) -> &str {
        booster
            .objective
            .as_deref()
            .and_then(|o| o.split(' ').next())
            .unwrap_or("custom")
    }
}

/// Refuses what the converter does not serve, whatever the objective.
pub fn check_supported(booster: &Booster) -> Result<(), LightGbmError> {
    if booster.linear_tree {
        return Err(unsupported("linear trees (linear_tree=true)"));
    }
    if booster.average_output {
        return Err(unsupported(
            "random-forest boosting (boosting=rf, average_output)",
        ));
    }
    if let Some(categories) = &booster.pandas_categorical {
        let shown: String = categories.chars().take(60).collect();
        return Err(unsupported(format!(
            "a model trained on pandas category columns (pandas_categorical {shown}…): its \
             predict maps category values to codes from a DataFrame; pass the codes as numbers \
             in a model trained on them instead"
        )));
    }
    Ok(())
}

/// The ensemble LightGBM predicts with: the first `best_iteration` iterations when it is
/// positive, else all (`Booster.predict` with `num_iteration=None`, `GBDT::InitPredict`).
pub fn ensemble(booster: &Booster, best_iteration: i64, output: LightGbmOutput) -> LightGbm {
    let per_iteration = booster.num_tree_per_iteration;
    let iterations = booster.trees.len() / per_iteration;
    let used = match usize::try_from(best_iteration) {
        Ok(best) if best > 0 => best.min(iterations),
        _ => iterations,
    };
    let trees = booster.trees[..used * per_iteration]
        .iter()
        .map(tree)
        .collect();
    LightGbm {
        objective: Objective::name(booster).to_string(),
        trees,
        n_scores: per_iteration,
        output,
    }
}

fn tree(t: &text::Tree) -> LightGbmTree {
    let child = |c: i32| {
        if c >= 0 {
            LightGbmChild::Node(c as usize)
        } else {
            LightGbmChild::Leaf(!c as usize)
        }
    };
    let nodes = (0..t.num_leaves - 1)
        .map(|i| LightGbmNode {
            feature: t.split_feature[i],
            left: child(t.left_child[i]),
            right: child(t.right_child[i]),
            test: if t.is_categorical(i) {
                LightGbmTest::Categorical {
                    categories: t.categories(i),
                }
            } else {
                LightGbmTest::Numeric {
                    threshold: t.threshold[i],
                    missing: match t.missing_type(i) {
                        MissingType::None => LightGbmMissing::None,
                        MissingType::Zero => LightGbmMissing::Zero,
                        MissingType::NaN => LightGbmMissing::NaN,
                    },
                    default_left: t.default_left(i),
                }
            },
        })
        .collect();
    LightGbmTree {
        nodes,
        leaves: t.leaf_value.clone(),
    }
}

/// The booster's feature names, or `None` for LightGBM's automatic `Column_0…`.
pub fn feature_names(booster: &Booster) -> Option<Vec<String>> {
    let automatic = booster
        .feature_names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("Column_{i}"));
    (!automatic).then(|| booster.feature_names.clone())
}

/// The output head for `objective`: a regression objective's link, or a classification
/// objective's classifier over `classes` (ignored for regression) and the scale the ensemble
/// applies to its raw scores.
pub fn head(
    objective: &Objective,
    classes: Vec<ClassLabel>,
) -> (Option<Classifier>, LightGbmOutput) {
    let (probabilities, scale) = match *objective {
        Objective::Regression(output) => return (None, output),
        Objective::Binary { scale } => (Probabilities::BinaryExpit, scale),
        Objective::Multiclass { .. } => (Probabilities::Softmax, 1.0),
        Objective::MulticlassOva { scale, .. } => (Probabilities::Sigmoids, scale),
    };
    // The sklearn wrapper's `predict` is `argmax(predict_proba)` (binary: of `[1 - p, p]`).
    let classifier = Classifier {
        classes,
        probabilities,
        label: LabelRule::ArgmaxProbabilities,
    };
    (Some(classifier), LightGbmOutput::Scores { scale })
}

/// The number of classes a classification objective predicts (2 for binary).
pub fn n_classes(objective: &Objective) -> Option<usize> {
    match *objective {
        Objective::Regression(_) => None,
        Objective::Binary { .. } => Some(2),
        Objective::Multiclass { n_classes } | Objective::MulticlassOva { n_classes, .. } => {
            Some(n_classes)
        }
    }
}

/// A native text model as a [`Model`]: a regressor, or for a classification objective a
/// classifier over LightGBM's labels `0…K-1` (binary: `predict` is `p`, served as
/// `probabilities [1 - p, p]`).
pub fn native_model(bytes: &[u8]) -> Result<Model, LightGbmError> {
    let booster = text::parse(bytes)?;
    check_supported(&booster)?;
    let objective = Objective::of(&booster)?;
    let kind = format!("LightGBM Booster ({})", Objective::name(&booster));
    let k = n_classes(&objective).unwrap_or(0) as i64;
    let (classifier, output) = head(&objective, (0..k).map(ClassLabel::Int).collect());
    let lightgbm = ensemble(&booster, 0, output);
    Ok(Model {
        kind,
        feature_names: feature_names(&booster),
        n_features: booster.n_features,
        n_targets: lightgbm.n_scores,
        sklearn_version: String::new(),
        steps: vec![],
        estimator: Estimator::LightGbm(lightgbm),
        classifier,
        accepts_missing: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three iterations of two trees each (a 2-class multiclassova model), leaf values
    /// 1, 2, ... in tree order.
    fn booster() -> Booster {
        let mut text = String::from(
            "tree\nversion=v4\nnum_class=2\nnum_tree_per_iteration=2\nlabel_index=0\n\
             max_feature_idx=0\nobjective=multiclassova num_class:2 sigmoid:2\n\
             feature_names=Column_0\nfeature_infos=none\n\n",
        );
        for t in 0..6 {
            text += &format!(
                "Tree={t}\nnum_leaves=1\nnum_cat=0\nleaf_value={}\n\n",
                t + 1
            );
        }
        text += "end of trees\n";
        text::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn best_iteration_keeps_whole_iterations_as_booster_predict_does() {
        let b = booster();
        let leaves = |best: i64| -> Vec<f64> {
            let e = ensemble(&b, best, LightGbmOutput::Identity);
            assert_eq!(e.n_scores, 2);
            e.trees.iter().map(|t| t.leaves[0]).collect()
        };
        assert_eq!(leaves(0), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(leaves(-1), leaves(0));
        assert_eq!(leaves(2), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(leaves(1), [1.0, 2.0]);
        assert_eq!(leaves(99), leaves(0));
    }

    #[test]
    fn objectives_choose_the_head() {
        let b = booster();
        let objective = Objective::of(&b).unwrap();
        assert_eq!(
            objective,
            Objective::MulticlassOva {
                n_classes: 2,
                scale: 2.0
            }
        );
        let (classifier, output) = head(&objective, vec![ClassLabel::Int(0), ClassLabel::Int(1)]);
        let classifier = classifier.unwrap();
        assert_eq!(classifier.probabilities, Probabilities::Sigmoids);
        assert_eq!(classifier.label, LabelRule::ArgmaxProbabilities);
        assert_eq!(output, LightGbmOutput::Scores { scale: 2.0 });
        assert_eq!(feature_names(&b), None);
        let regression = Objective::Regression(LightGbmOutput::Exp);
        assert_eq!(head(&regression, vec![]), (None, LightGbmOutput::Exp));
    }
}
