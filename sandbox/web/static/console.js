// Progressive enhancement only: every page works without this file.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (button) {
    var source = document.getElementById(button.dataset.copy);
    if (!source) return;
    var text = source.value || source.textContent;
    var finish = function () { button.textContent = button.dataset.done || "✔"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(finish, function () { source.select(); document.execCommand("copy"); finish(); });
    } else {
      source.select(); document.execCommand("copy"); finish();
    }
    return;
  }
  var confirmable = event.target.closest("button[data-confirm]");
  if (confirmable && !window.confirm(confirmable.dataset.confirm)) {
    event.preventDefault();
  }
});
