// Autograd node handles across libtorch versions: std::shared_ptr<Node> in 1.13 and 2.x up to the
// change, c10::intrusive_ptr<Node> after it (Debian sid's 2.14, which also dropped
// torch::autograd::deleteNode). The type is read off Edge::function, not a version number.
#pragma once
#include <torch/csrc/autograd/edge.h>

#include <memory>
#include <type_traits>

namespace omni::dist {

using NodePtr = decltype(torch::autograd::Edge::function);

// A new node of type T (a torch::autograd::Node) in the handle this libtorch uses. Under
// shared_ptr the default deleter is enough: a node of ours holds edges into libtorch's own nodes,
// which free their long chains iteratively themselves.
template <class T>
auto make_node() {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>)
    return std::make_shared<T>();
  else
    return c10::make_intrusive<T>();
}

}  // namespace omni::dist
