// Placeholder replaced by the CNI plugin build (bundle + single executable).
console.log("cni plugin build: not yet implemented");
