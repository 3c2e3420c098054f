//! The only `(module, name)` globals a pickle may reference, and what each one rebuilds into.
//!
//! The pair is compared exactly: no prefixes, no attribute chains (`a.b` in a name), no aliases.
//! Anything else is refused by the reader with the pair in the error.

/// What the reader does with an allow-listed global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `numpy.core.multiarray._reconstruct`: REDUCE → empty array, then BUILD fills it.
    Reconstruct,
    /// `numpy.ndarray`: only as the subtype argument of `_reconstruct`.
    NdarrayType,
    /// `numpy.dtype`: REDUCE `(typestr, align, copy)` then BUILD.
    Dtype,
    /// `numpy.core.multiarray.scalar`: REDUCE `(dtype, bytes)`.
    Scalar,
    /// `numpy.core.numeric._frombuffer`: REDUCE `(buffer, dtype, shape, order)`.
    Frombuffer,
    /// `_codecs.encode`: REDUCE `(str, 'latin1')` → bytes (protocol 2).
    CodecsEncode,
    /// `builtins.bytearray`: REDUCE `(bytes,)`, `(str, 'latin-1')` or `()` → bytes (how a
    /// bytearray pickles before protocol 5; XGBoost's booster bytes are one).
    ByteArray,
    /// `joblib.numpy_pickle.NumpyArrayWrapper`: NEWOBJ + BUILD, raw array data follows.
    ArrayWrapper,
    /// A supported scikit-learn class: NEWOBJ/REDUCE + BUILD into an inert `Object`.
    Estimator,
    /// A class or constructor found inside supported models that is kept opaque (losses,
    /// links, random states); never interpreted.
    Opaque,
    /// A dict subclass (`collections.OrderedDict`, `collections.defaultdict`): REDUCE → an
    /// empty plain dict (the arguments, e.g. a default factory, are dropped, never called),
    /// which SETITEMS then fills.
    Dict,
}

const NUMPY: &[(&str, &str, Role)] = &[
    ("numpy.core.multiarray", "_reconstruct", Role::Reconstruct),
    ("numpy._core.multiarray", "_reconstruct", Role::Reconstruct),
    ("numpy", "ndarray", Role::NdarrayType),
    ("numpy", "dtype", Role::Dtype),
    ("numpy.core.multiarray", "scalar", Role::Scalar),
    ("numpy._core.multiarray", "scalar", Role::Scalar),
    ("numpy.core.numeric", "_frombuffer", Role::Frombuffer),
    ("numpy._core.numeric", "_frombuffer", Role::Frombuffer),
    ("_codecs", "encode", Role::CodecsEncode),
    (
        "joblib.numpy_pickle",
        "NumpyArrayWrapper",
        Role::ArrayWrapper,
    ),
    ("builtins", "bytearray", Role::ByteArray),
];

/// XGBoost's sklearn wrappers and its Booster (whose state holds the model as bytes, read by
/// `crate::xgboost`, never by XGBoost).
const XGBOOST: &[(&str, &str, Role)] = &[
    ("xgboost.sklearn", "XGBRegressor", Role::Estimator),
    ("xgboost.sklearn", "XGBClassifier", Role::Estimator),
    ("xgboost.sklearn", "XGBRFRegressor", Role::Estimator),
    ("xgboost.sklearn", "XGBRFClassifier", Role::Estimator),
    ("xgboost.core", "Booster", Role::Estimator),
];

const SKLEARN: &[(&str, &str, Role)] = &[
    (
        "sklearn.linear_model._base",
        "LinearRegression",
        Role::Estimator,
    ),
    ("sklearn.linear_model._ridge", "Ridge", Role::Estimator),
    (
        "sklearn.linear_model._coordinate_descent",
        "Lasso",
        Role::Estimator,
    ),
    (
        "sklearn.linear_model._coordinate_descent",
        "ElasticNet",
        Role::Estimator,
    ),
    (
        "sklearn.tree._classes",
        "DecisionTreeRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.tree._classes",
        "ExtraTreeRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._forest",
        "RandomForestRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._forest",
        "ExtraTreesRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._gb",
        "GradientBoostingRegressor",
        Role::Estimator,
    ),
    ("sklearn.dummy", "DummyRegressor", Role::Estimator),
    // Classifiers (issue 18) and GradientBoostingClassifier's init estimator.
    (
        "sklearn.linear_model._logistic",
        "LogisticRegression",
        Role::Estimator,
    ),
    (
        "sklearn.tree._classes",
        "DecisionTreeClassifier",
        Role::Estimator,
    ),
    (
        "sklearn.tree._classes",
        "ExtraTreeClassifier",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._forest",
        "RandomForestClassifier",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._forest",
        "ExtraTreesClassifier",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._gb",
        "GradientBoostingClassifier",
        Role::Estimator,
    ),
    ("sklearn.dummy", "DummyClassifier", Role::Estimator),
    // Linear regressors read like LinearRegression (coef_ + intercept_).
    (
        "sklearn.linear_model._stochastic_gradient",
        "SGDRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.linear_model._huber",
        "HuberRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.linear_model._bayes",
        "BayesianRidge",
        Role::Estimator,
    ),
    (
        "sklearn.linear_model._bayes",
        "ARDRegression",
        Role::Estimator,
    ),
    ("sklearn.svm._classes", "LinearSVR", Role::Estimator),
    ("sklearn.linear_model._ridge", "RidgeCV", Role::Estimator),
    (
        "sklearn.linear_model._coordinate_descent",
        "LassoCV",
        Role::Estimator,
    ),
    (
        "sklearn.linear_model._coordinate_descent",
        "ElasticNetCV",
        Role::Estimator,
    ),
    ("sklearn.linear_model._least_angle", "Lars", Role::Estimator),
    (
        "sklearn.linear_model._least_angle",
        "LassoLars",
        Role::Estimator,
    ),
    ("sklearn.pipeline", "Pipeline", Role::Estimator),
    (
        "sklearn.preprocessing._data",
        "StandardScaler",
        Role::Estimator,
    ),
    ("sklearn.tree._tree", "Tree", Role::Estimator),
    // Preprocessing (issue 18): scalers, the imputer and its missing indicator, and
    // ColumnTransformer, which keeps its passthrough columns as a FunctionTransformer (the
    // extractor accepts one only without a function).
    (
        "sklearn.preprocessing._data",
        "MinMaxScaler",
        Role::Estimator,
    ),
    (
        "sklearn.preprocessing._data",
        "RobustScaler",
        Role::Estimator,
    ),
    (
        "sklearn.preprocessing._data",
        "MaxAbsScaler",
        Role::Estimator,
    ),
    ("sklearn.impute._base", "SimpleImputer", Role::Estimator),
    ("sklearn.impute._base", "MissingIndicator", Role::Estimator),
    (
        "sklearn.compose._column_transformer",
        "ColumnTransformer",
        Role::Estimator,
    ),
    (
        "sklearn.preprocessing._function_transformer",
        "FunctionTransformer",
        Role::Estimator,
    ),
    (
        "sklearn.preprocessing._encoders",
        "OneHotEncoder",
        Role::Estimator,
    ),
    (
        "sklearn.preprocessing._encoders",
        "OrdinalEncoder",
        Role::Estimator,
    ),
    // HistGradientBoosting: the estimators, their per-tree predictors and the bin mapper
    // (which knows the categories seen in training).
    (
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
        "HistGradientBoostingRegressor",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
        "HistGradientBoostingClassifier",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._hist_gradient_boosting.predictor",
        "TreePredictor",
        Role::Estimator,
    ),
    (
        "sklearn.ensemble._hist_gradient_boosting.binning",
        "_BinMapper",
        Role::Estimator,
    ),
];

/// LightGBM's scikit-learn wrappers and the booster they hold (its state keeps the model
/// text), and the dict subclasses their state uses (`best_score`).
const LIGHTGBM: &[(&str, &str, Role)] = &[
    ("lightgbm.sklearn", "LGBMRegressor", Role::Estimator),
    ("lightgbm.sklearn", "LGBMClassifier", Role::Estimator),
    ("lightgbm.basic", "Booster", Role::Estimator),
    ("collections", "OrderedDict", Role::Dict), // also XGBoost's evals_result_
    ("collections", "defaultdict", Role::Dict),
];

const OPAQUE: &[(&str, &str)] = &[
    // GradientBoosting losses, sklearn <= 1.3 ...
    ("sklearn.ensemble._gb_losses", "LeastSquaresError"),
    ("sklearn.ensemble._gb_losses", "LeastAbsoluteError"),
    ("sklearn.ensemble._gb_losses", "HuberLossFunction"),
    ("sklearn.ensemble._gb_losses", "QuantileLossFunction"),
    // ... and >= 1.4 (the extractor refuses the losses it does not support, by name).
    ("sklearn._loss.loss", "HalfSquaredError"),
    ("sklearn._loss.loss", "AbsoluteError"),
    ("sklearn._loss.loss", "HuberLoss"),
    ("sklearn._loss.loss", "PinballLoss"),
    ("sklearn._loss._loss", "CyHalfSquaredError"),
    ("sklearn._loss._loss", "CyAbsoluteError"),
    ("sklearn._loss._loss", "CyHuberLoss"),
    ("sklearn._loss._loss", "CyPinballLoss"),
    ("sklearn._loss.link", "IdentityLink"),
    // GradientBoostingClassifier's losses: sklearn <= 1.3 ...
    ("sklearn.ensemble._gb_losses", "BinomialDeviance"),
    ("sklearn.ensemble._gb_losses", "MultinomialDeviance"),
    // ... and >= 1.4.
    ("sklearn._loss.loss", "HalfBinomialLoss"),
    ("sklearn._loss.loss", "HalfMultinomialLoss"),
    ("sklearn._loss._loss", "CyHalfBinomialLoss"),
    ("sklearn._loss._loss", "CyHalfMultinomialLoss"),
    // Cython's unpickler for the multinomial loss (REDUCE here only builds an inert object).
    (
        "sklearn._loss._loss",
        "__pyx_unpickle_CyHalfMultinomialLoss",
    ),
    ("sklearn._loss.link", "LogitLink"),
    ("sklearn._loss.link", "MultinomialLogit"),
    ("sklearn._loss.link", "Interval"),
    // HistGradientBoosting's losses and links (sklearn >= 1.1); sklearn <= 1.3 pickles the
    // Cython loss through its `__pyx_unpickle_*` function, which the reader never calls.
    ("sklearn._loss.loss", "HalfPoissonLoss"),
    ("sklearn._loss.loss", "HalfGammaLoss"),
    ("sklearn._loss.loss", "HalfBinomialLoss"),
    ("sklearn._loss.loss", "HalfMultinomialLoss"),
    ("sklearn._loss._loss", "CyHalfPoissonLoss"),
    ("sklearn._loss._loss", "CyHalfGammaLoss"),
    ("sklearn._loss._loss", "CyHalfBinomialLoss"),
    ("sklearn._loss._loss", "CyHalfMultinomialLoss"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfSquaredError"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyAbsoluteError"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyPinballLoss"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfPoissonLoss"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfGammaLoss"),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfBinomialLoss"),
    (
        "sklearn._loss._loss",
        "__pyx_unpickle_CyHalfMultinomialLoss",
    ),
    ("sklearn._loss.link", "LogLink"),
    ("sklearn._loss.link", "LogitLink"),
    ("sklearn._loss.link", "MultinomialLogit"),
    // The classifier's label encoder (its classes_ are read from the classifier itself).
    ("sklearn.preprocessing._label", "LabelEncoder"),
    // ColumnTransformer's `output_indices_` holds Python slices (never read).
    ("builtins", "slice"),
    // The encoders' `dtype` parameter (the class itself, never called).
    ("numpy", "float64"),
    // Random states stored on GradientBoosting and on each tree.
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._mt19937", "MT19937"),
    // HistGradientBoosting >= 1.4 keeps a numpy Generator for feature subsampling.
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
];

/// Returns the role of an allow-listed global, or `None` if it must be refused.
pub fn lookup(module: &str, name: &str) -> Option<Role> {
    NUMPY
        .iter()
        .chain(SKLEARN)
        .chain(LIGHTGBM)
        .chain(XGBOOST)
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|(_, _, role)| *role)
        .or_else(|| {
            OPAQUE
                .iter()
                .any(|(m, n)| *m == module && *n == name)
                .then_some(Role::Opaque)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pairs_only() {
        assert_eq!(lookup("numpy", "dtype"), Some(Role::Dtype));
        assert_eq!(
            lookup("sklearn.ensemble._forest", "RandomForestRegressor"),
            Some(Role::Estimator)
        );
        assert_eq!(lookup("os", "system"), None);
        assert_eq!(lookup("numpy", "load"), None);
        assert_eq!(lookup("numpy.core", "multiarray._reconstruct"), None);
        assert_eq!(
            lookup("sklearn.neighbors._regression", "KNeighborsRegressor"),
            None
        );
        assert_eq!(lookup("numpy ", "dtype"), None);
        assert_eq!(lookup("collections", "OrderedDict"), Some(Role::Dict));
        assert_eq!(lookup("collections", "namedtuple"), None);
        assert_eq!(lookup("lightgbm.basic", "Booster"), Some(Role::Estimator));
        assert_eq!(lookup("lightgbm.basic", "_load_lib"), None);
    }
}
