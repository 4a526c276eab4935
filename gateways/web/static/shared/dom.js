// Lists that refresh without losing what the user is doing (classic script: window.GDDom).
// The command centre's queue (a dispatcher's click must not land on a row that a refresh
// replaced) and the inspector's visit worklist (a half-typed visit must survive the send
// loop) both re-render by putting their elements in order instead of rebuilding them.
(function () {
  "use strict";

  /** Make ``nodes`` the children of ``parent``, in this order: nodes already there stay the
   * same elements (focus, open forms, selection, listeners kept) and are only moved when
   * out of place; other children are removed, new nodes inserted. */
  function placeInOrder(parent, nodes) {
    const wanted = new Set(nodes);
    for (const child of [...parent.childNodes]) if (!wanted.has(child)) child.remove();
    let at = parent.firstChild;
    for (const node of nodes) {
      if (node === at) at = at.nextSibling;
      else parent.insertBefore(node, at);
    }
  }

  window.GDDom = { placeInOrder };
})();
