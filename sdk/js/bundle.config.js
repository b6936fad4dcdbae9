// Rolldown options for `jco componentize --bundle --bundle-config`: the host's WIT
// interfaces (`tensorlet:ml/...`) are imports of the component, not files to bundle.
export default {
  external: [/^tensorlet:/],
};
