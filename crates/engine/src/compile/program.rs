//! A condition as a branch program, what the engine runs per event: its checks in the order
//! the tree judges them, each with where to go when it is true and when it is false. An `and`
//! goes on to its next operand on true and to its own false exit on false, an `or` the other
//! way round, a `not` swaps the exits and a constant is the exit it names, so the program
//! judges the checks the tree would, in the same order, stopping where the tree stops.
//!
//! The tree (`Node`) stays what the load-time analyses read (the prefilter, the kernel filter,
//! the shared-check numbering); judging it recursively cost a call, with its saved registers,
//! per node per event: about a seventh of the engine's instructions with the default rules.

use super::{CheckM, Node};
use crate::fields::Ctx;

/// Where a step goes next: a step's index, or one of the two exits.
type Next = u32;
/// The condition is true.
const TRUE: Next = u32::MAX;
/// The condition is false.
const FALSE: Next = u32::MAX - 1;

#[derive(Debug, Clone)]
struct Step {
    check: CheckM,
    on_true: Next,
    on_false: Next,
}

/// A compiled condition's checks as a branch program (see the module doc).
#[derive(Debug, Clone)]
pub struct Program {
    steps: Box<[Step]>,
    entry: Next,
}

impl Program {
    /// The program judging `node` as [`Node::eval`] does. Its checks are copied with their
    /// shared-check slots: build it after [`Node::share_checks`].
    pub fn new(node: &Node) -> Self {
        let mut steps = Vec::new();
        let entry = lay_out(node, TRUE, FALSE, &mut steps);
        // Laid out from the last check back; reversed, a program runs forwards in memory.
        let last = steps.len() as u32;
        let flip = |n: Next| if n < FALSE { last - 1 - n } else { n };
        steps.reverse();
        for s in &mut steps {
            s.on_true = flip(s.on_true);
            s.on_false = flip(s.on_false);
        }
        Self {
            steps: steps.into(),
            entry: flip(entry),
        }
    }

    /// Whether the event passes the condition.
    #[inline]
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        let mut at = self.entry;
        loop {
            match at {
                TRUE => return true,
                FALSE => return false,
                _ => {}
            }
            let Some(step) = self.steps.get(at as usize) else {
                return false;
            };
            at = if step.check.eval_shared(ctx) {
                step.on_true
            } else {
                step.on_false
            };
        }
    }

    /// Whether the program holds no check (its condition is a constant).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Appends the steps of `node` to `steps`, given where to go when it is true and when it is
/// false; returns where it begins. Operands are laid out last first, so that each knows
/// where the one after it begins.
fn lay_out(node: &Node, on_true: Next, on_false: Next, steps: &mut Vec<Step>) -> Next {
    match node {
        Node::Const(true) => on_true,
        Node::Const(false) => on_false,
        Node::Not(n) => lay_out(n, on_false, on_true, steps),
        Node::And(v) => v
            .iter()
            .rev()
            .fold(on_true, |next, n| lay_out(n, next, on_false, steps)),
        Node::Or(v) => v
            .iter()
            .rev()
            .fold(on_false, |next, n| lay_out(n, on_true, next, steps)),
        Node::Check(c) => {
            steps.push(Step {
                check: (**c).clone(),
                on_true,
                on_false,
            });
            (steps.len() - 1) as Next
        }
    }
}

#[cfg(test)]
mod tests;
