//! `print(model)`: the module tree as PyTorch's `nn.Module.__repr__` prints it.
//!
//! PyTorch prints a module as `Class(` + its `extra_repr` + one line `(name): repr(child)` per
//! child, indented by two spaces per level, then `)`; a module with no children and a one-line
//! `extra_repr` fits on one line (`ReLU()`, `Linear(in_features=1568, out_features=10,
//! bias=True)`). The tree is rebuilt from the layers' dotted paths in [`NetSpec::layers`] (the
//! order their modules are first used, which is the order a PyTorch `__init__` registers them
//! in a listing that reads like one), with the containers' classes from [`NetSpec::modules`].

use std::fmt;

use super::spec::{NetSpec, Op};

/// A network's module tree; print it with `{}` (each `network!` type's own `Display` does).
#[derive(Clone, Copy, Debug)]
pub struct ModuleTree {
    spec: &'static NetSpec,
}

/// A node of the tree: a layer (its repr) or a container (its class and children).
struct Node {
    name: String,
    repr: Option<&'static str>,
    class: &'static str,
    children: Vec<Node>,
}

impl Node {
    fn container(name: &str, class: &'static str) -> Node {
        Node { name: name.to_string(), repr: None, class, children: Vec::new() }
    }

    /// `Class(\n  (child): ...\n)` with every line after the first indented by `indent`.
    fn write(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        if let Some(repr) = self.repr {
            return f.write_str(repr);
        }
        if self.children.is_empty() {
            return write!(f, "{}()", self.class);
        }
        writeln!(f, "{}(", self.class)?;
        for child in &self.children {
            write!(f, "{:pad$}({}): ", "", child.name, pad = indent + 2)?;
            child.write(f, indent + 2)?;
            writeln!(f)?;
        }
        write!(f, "{:pad$})", "", pad = indent)
    }
}

impl ModuleTree {
    /// The tree of the network described by `spec`.
    pub fn new(spec: &'static NetSpec) -> Self {
        ModuleTree { spec }
    }

    fn root(&self) -> Node {
        let spec = self.spec;
        let class = |path: &str| spec.modules.iter().find(|m| m.name == path).map_or("Sequential", |m| m.class);
        let mut root = Node::container("", spec.name);
        // A residual block's sum is no module; a layer used twice (a block's `relu`, applied
        // again after the sum, as in torchvision's BasicBlock) is one module, shown once. A
        // functional op (`_: Flatten`) is no module either.
        for layer in spec.layers.iter().filter(|l| !matches!(l.op, Op::Add) && !l.functional) {
            let mut node = &mut root;
            let mut path = String::new();
            let parts: Vec<&str> = layer.name.split('.').collect();
            for (depth, part) in parts.iter().enumerate() {
                if depth > 0 {
                    path.push('.');
                }
                path.push_str(part);
                let last = depth + 1 == parts.len();
                let index = match node.children.iter().position(|c| c.name == *part) {
                    Some(i) => i,
                    None => {
                        let mut child = Node::container(part, class(&path));
                        if last {
                            child.repr = Some(layer.display);
                        }
                        node.children.push(child);
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[index];
            }
        }
        root
    }
}

impl fmt::Display for ModuleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root().write(f, 0)
    }
}
