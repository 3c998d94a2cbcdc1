"""View definitions and the measure algebra: one declaration compiled for both layers."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "ViewDef": "views.definition",
        "Measure": "views.definition",
        "Derived": "views.definition",
        "Enrich": "views.definition",
        "Dimension": "views.dimension",
        "declare": "views.dimension",
        "all_views": "views.registry",
        "get_view": "views.registry",
        "views_of": "views.registry",
        "aggregate": "views.compute",
        "combine": "views.compute",
    },
)
