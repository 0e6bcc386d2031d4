// The portal's only script of its own (no inline script: the CSP forbids it).
// Copy buttons for secrets shown once; focus on the error summary after a refused form.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const value = document.getElementById(button.dataset.copy);
  if (!value) return;
  navigator.clipboard.writeText(value.textContent.trim()).then(() => {
    button.textContent = button.dataset.copied || "Copied";
  });
});
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector("[data-autofocus]");
  if (summary) summary.focus();
});
