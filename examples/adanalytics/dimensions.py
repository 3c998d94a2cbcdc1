"""The ad-analytics project's dimension: which campaign each ad belongs to (YSB's Redis map).

Load a version with ``lambdalab dim load campaigns data/campaigns.csv``; loading a changed
file makes a new version, and the next batch cycle rebuilds the views that use it.
"""

from lambdalab.schema import Field
from views.dimension import Dimension

CAMPAIGNS = Dimension(
    "campaigns",
    key=Field("ad_id", "string"),
    fields=(Field("campaign_id", "string"),),
    description="ad_id -> campaign_id: 100 campaigns of 10 ads each, as in YSB",
)

DIMENSIONS = [CAMPAIGNS]
