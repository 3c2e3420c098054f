//! Checks the decoded graph's shape: no cycles, no nesting deeper than a limit.
//!
//! Runs once after decoding, iteratively (no recursion, so hostile nesting cannot overflow the
//! stack) and in time linear in the graph (each node is finished once, so billion-laughs style
//! memo reuse costs nothing extra).

use super::value::{Graph, NodeId, Value};

/// Why the graph was rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum ShapeError {
    Cycle,
    TooDeep,
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    Open,
    /// Finished, with the height of the subtree below it.
    Done(usize),
}

/// Verifies that the values reachable from `root` form a DAG no deeper than `max_depth`.
pub fn acyclic_and_shallow(
    graph: &Graph,
    root: NodeId,
    max_depth: usize,
) -> Result<(), ShapeError> {
    struct Frame<'g> {
        node: NodeId,
        children: Box<dyn Iterator<Item = NodeId> + 'g>,
        /// Height of the tallest finished child so far, plus one.
        height: usize,
    }
    let mut marks = vec![Mark::New; graph.nodes.len()];
    let mut path = vec![Frame {
        node: root,
        children: children(graph, root),
        height: 0,
    }];
    set(&mut marks, root, Mark::Open);
    loop {
        let depth = path.len();
        let Some(frame) = path.last_mut() else {
            break;
        };
        match frame.children.next() {
            Some(child) => match marks.get(child.0).copied() {
                Some(Mark::New) => {
                    if depth >= max_depth {
                        return Err(ShapeError::TooDeep);
                    }
                    set(&mut marks, child, Mark::Open);
                    path.push(Frame {
                        node: child,
                        children: children(graph, child),
                        height: 0,
                    });
                }
                Some(Mark::Open) => return Err(ShapeError::Cycle),
                Some(Mark::Done(h)) => {
                    if depth + h >= max_depth {
                        return Err(ShapeError::TooDeep);
                    }
                    frame.height = frame.height.max(h + 1);
                }
                None => return Err(ShapeError::Cycle),
            },
            None => {
                let (node, height) = (frame.node, frame.height);
                path.pop();
                set(&mut marks, node, Mark::Done(height));
                if let Some(parent) = path.last_mut() {
                    parent.height = parent.height.max(height + 1);
                }
            }
        }
    }
    Ok(())
}

fn set(marks: &mut [Mark], id: NodeId, mark: Mark) {
    if let Some(slot) = marks.get_mut(id.0) {
        *slot = mark;
    }
}

/// The values a value refers to.
fn children(graph: &Graph, id: NodeId) -> Box<dyn Iterator<Item = NodeId> + '_> {
    match graph.nodes.get(id.0) {
        Some(Value::Tuple(items) | Value::List(items) | Value::Set(items)) => {
            Box::new(items.iter().copied())
        }
        Some(Value::Dict(items)) => Box::new(items.iter().flat_map(|(k, v)| [*k, *v])),
        Some(Value::Object { args, state, .. }) => {
            Box::new(args.iter().copied().chain(state.iter().copied()))
        }
        Some(Value::NdArray(array)) => Box::new(array.objects.iter().copied()),
        _ => Box::new(std::iter::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(nodes: Vec<Value>) -> Graph {
        Graph {
            nodes,
            root: Some(NodeId(0)),
        }
    }

    #[test]
    fn shared_nodes_are_fine_cycles_are_not() {
        let shared = graph(vec![
            Value::List(vec![NodeId(1), NodeId(1)]),
            Value::Tuple(vec![NodeId(2), NodeId(2)]),
            Value::None,
        ]);
        assert_eq!(acyclic_and_shallow(&shared, NodeId(0), 10), Ok(()));
        let cycle = graph(vec![
            Value::List(vec![NodeId(1)]),
            Value::List(vec![NodeId(0)]),
        ]);
        assert_eq!(
            acyclic_and_shallow(&cycle, NodeId(0), 10),
            Err(ShapeError::Cycle)
        );
    }

    #[test]
    fn depth_is_bounded() {
        let nodes = (0..50)
            .map(|i| Value::List(vec![NodeId(i + 1)]))
            .chain([Value::None])
            .collect();
        let deep = graph(nodes);
        assert_eq!(acyclic_and_shallow(&deep, NodeId(0), 100), Ok(()));
        assert_eq!(
            acyclic_and_shallow(&deep, NodeId(0), 20),
            Err(ShapeError::TooDeep)
        );
    }
}
