// Marks the page with how many code blocks or tables are wider than their box
// (content cut off on the right); tests/test_docs.py reads it with headless Chromium.
window.addEventListener("load", function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll("pre, table"));
  var cut = boxes.filter(function (el) {
    var box = el.tagName === "PRE" ? el : el.parentElement;
    return el.scrollWidth > box.clientWidth + 1;
  });
  var article = document.querySelector(".bd-article");
  if (article && article.scrollWidth > article.clientWidth + 1) { cut.push(article); }
  document.body.setAttribute("data-cutoff", String(cut.length));
});
